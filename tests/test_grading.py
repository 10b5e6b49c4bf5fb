"""The shared grader on realistic model replies; every expected verdict below was written by hand.

Each row: a reply, the gold answer (and MathVista options when multiple choice), whether it is right,
the answer extraction should find (None: nothing) and the rule that finds it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from frankenstein_tasks import grading
from frankenstein_tasks.grading import (
    answers_equivalent,
    extract_answer,
    grade,
    grade_mathvista,
    gsm8k_gold,
    match_method,
    math500_gold,
    resolve_option,
)
from surgery.errors import FrankensteinError

OPTIONS = ["1.0", "1.5", "2.0", "2.5"]
CITIES = ["tokyo", "kyoto", "osaka"]
ANY = "equivalent by either tolerance"

# id, reply, gold, choices, correct, extracted answer, rule
TABLE = [
    # ---- reasoning blocks with decoy numbers
    ("think_then_tag", "<think>First 3 + 4 = 7, then 7 * 2 = 14. Or maybe 15?</think>\n<answer>14</answer>", "14", None, True, "14", "answer_tag"),
    ("think_then_boxed", "<think>She has 30 and gives away 12, so 30 - 12 = 18. Hmm, or 19.</think>\nThe total is $\\boxed{18}$.", "18", None, True, "18", "boxed"),
    ("think_only_no_marker", "<think>So 3*5=15 and 15+2=17</think>", "17", None, False, None, None),
    ("think_then_answer_colon", "<think>Maybe 40, maybe 41.</think>\nAnswer: 42", "42", None, True, "42", "answer_is"),
    ("think_decoy_answer_is", "<think>Is the answer is 10? No, recount.</think> The answer is 12.", "12", None, True, "12", "answer_is"),
    ("unclosed_think_boxed", "<think>Adding up: 2 + 5 = 7, so \\boxed{7}. Let me double-check 2 + 5 again, which is", "7", None, True, "7", "boxed"),
    ("unclosed_think_numbers_only", "<think>Let x = 4. Then 2x = 8 and", "8", None, False, None, None),
    ("box_in_think_then_answer_is", "<think>First try: \\boxed{3}. No, I missed one row.</think>\nThe answer is 4.", "4", None, True, "4", "answer_is"),
    ("answer_is_in_think_then_number", "<think>I guess the answer is 10.</think>\nCounting again gives 12", "12", None, True, "12", "last_number"),
    ("tag_inside_think", "<think>Count the rows: 3 rows of 3. <answer>9</answer></think>", "9", None, True, "9", "answer_tag"),
    # ---- answer tags
    ("tag_holds_boxed", "<answer>\\boxed{\\frac{\\sqrt{3}}{2}}</answer>", "\\frac{\\sqrt3}{2}", None, True, "\\frac{\\sqrt{3}}{2}", "answer_tag"),
    ("tag_unclosed_at_end", "<think>4 * 6 = 24</think><answer> 24", "24", None, True, "24", "answer_tag"),
    ("tag_holds_sentence", "<answer>The answer is 5.</answer>", "5", None, True, "5", "answer_tag"),
    ("tag_beats_later_box", "<answer>6</answer> (my first guess was \\boxed{4})", "6", None, True, "6", "answer_tag"),
    # ---- boxes
    ("nested_frac", "Thus the probability is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", None, True, "\\frac{1}{2}", "boxed"),
    ("dfrac_vs_frac", "So $r = \\boxed{\\dfrac{3}{4}}$", "\\frac34", None, True, "\\dfrac{3}{4}", "boxed"),
    ("multiple_boxes_last_right", "First guess \\boxed{4}, but correcting the sign: \\boxed{6}", "6", None, True, "6", "boxed"),
    ("multiple_boxes_last_wrong", "\\boxed{6} ... no wait, I dropped a term, it is \\boxed{4}", "6", None, False, "4", "boxed"),
    ("echoed_empty_box", 'I will put my answer in one "\\boxed{}". The answer is 9', "9", None, True, "9", "answer_is"),
    ("fbox", "Hence $\\fbox{8}$ is the count.", "8", None, True, "8", "boxed"),
    ("x_equals", "Solving, $\\boxed{x = 5}$", "5", None, True, "x = 5", "boxed"),
    ("math_letter_choice", "The correct choice is \\boxed{C}", "\\text{(C)}", None, True, "C", "boxed"),
    ("text_word_answer", "\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", None, True, "\\text{Evelyn}", "boxed"),
    ("anagram_word_wrong", "\\boxed{kyoto}", "tokyo", None, False, "kyoto", "boxed"),
    # ---- numbers: separators, units, percent, signs, tolerance
    ("thousands_in_box", "She earns \\boxed{1,234} dollars.", "1234", None, True, "1,234", "boxed"),
    ("thousands_last_number", "So the final total comes to 12,500 dollars", "12500", None, True, "12,500", "last_number"),
    ("units_text", "The side is $\\boxed{18 \\text{ cm}}$.", "18", None, True, "18 \\text{ cm}", "boxed"),
    ("units_words", "The answer is 5 apples.", "5", None, True, "5 apples", "answer_is"),
    ("dollar_sign", "The answer is \\$18.50.", "18.5", None, True, "\\$18.50", "answer_is"),
    ("percent", "\\boxed{25\\%}", "25", None, True, "25\\%", "boxed"),
    ("percent_wrong_scale", "\\boxed{2.5\\%}", "25", None, False, "2.5\\%", "boxed"),
    ("negative", "Therefore $x = \\boxed{-3}$", "-3", None, True, "-3", "boxed"),
    ("sign_matters", "\\boxed{3}", "-3", None, False, "3", "boxed"),
    ("negative_last_number", "Overnight the temperature dropped to -7 degrees", "-7", None, True, "-7", "last_number"),
    ("subtraction_is_not_a_sign", "The difference is 20-8", "-8", None, False, "8", "last_number"),
    ("twelve_vs_one_point_two", "\\boxed{12}", "1.2", None, False, "12", "boxed"),
    ("half_vs_two", "\\boxed{1/2}", "2", None, False, "1/2", "boxed"),
    ("decimal_vs_fraction", "so the answer is 0.5.", "\\frac{1}{2}", None, True, "0.5", "answer_is"),
    ("within_one_percent", "\\boxed{3.14}", "3.1416", None, True, "3.14", "boxed"),
    ("outside_one_percent", "\\boxed{3.0}", "3.1416", None, False, "3.0", "boxed"),
    ("markdown_bold", "**Final Answer:** **72**", "72", None, True, "72", "answer_is"),
    ("gsm8k_style_last_number", "Janet has 16 - 3 - 4 = 9 eggs left, and 9 * 2 = 18 dollars", "18", None, True, "18", "last_number"),
    # ---- LaTeX intervals
    ("interval_same", "\\boxed{[1, 2)}", "[1,2)", None, True, "[1, 2)", "boxed"),
    ("interval_other_brackets", "\\boxed{(1,2)}", "[1,2)", None, False, "(1,2)", "boxed"),
    ("interval_left_right", "The range is $\\boxed{\\left(-\\infty, 3\\right]}$", "(-\\infty, 3]", None, True, "\\left(-\\infty, 3\\right]", "boxed"),
    ("interval_open_vs_closed_infinity", "\\boxed{(-\\infty, 3)}", "(-\\infty,3]", None, False, "(-\\infty, 3)", "boxed"),
    # ---- empty and unusable replies
    ("empty", "", "5", None, False, None, None),
    ("whitespace", "  \n ", "5", None, False, None, None),
    ("none", None, "5", None, False, None, None),
    # ---- MathVista multiple choice (gold = option text)
    ("mc_letter_in_tag", "<think>Option A is 1.0, too small.</think><answer>B</answer>", "1.5", OPTIONS, True, "B", "answer_tag"),
    ("mc_letter_with_text", "<answer>B. 1.5</answer>", "1.5", OPTIONS, True, "B. 1.5", "answer_tag"),
    ("mc_text_beats_letter", "<answer>B. 2.0</answer>", "1.5", OPTIONS, False, "B. 2.0", "answer_tag"),
    ("mc_wrong_letter", "\\boxed{C}", "1.5", OPTIONS, False, "C", "boxed"),
    ("mc_option_text", "The answer is 1.5", "1.5", OPTIONS, True, "1.5", "answer_is"),
    ("mc_equivalent_text", "\\boxed{1.50}", "1.5", OPTIONS, True, "1.50", "boxed"),
    ("mc_parenthesised_letter", "The correct answer is (A).", "tokyo", CITIES, True, "(A)", "answer_is"),
    ("mc_bare_letter", "A", "tokyo", CITIES, True, "A", "short_text"),
    ("mc_letter_out_of_range", "\\boxed{E}", "1.5", OPTIONS, False, "E", "boxed"),
    ("mc_anagram_option", "<answer>kyoto</answer>", "tokyo", CITIES, False, "kyoto", "answer_tag"),
    ("mc_tolerance_trap", "\\boxed{101}", "100", ["100", "101"], False, "101", "boxed"),
    ("mc_option_word", "Answer: Option C", "osaka", CITIES, True, "Option C", "answer_is"),
]
# The table itself: large, unique ids, and plenty of replies that must NOT pass.
assert len(TABLE) >= 30 and len({row[0] for row in TABLE}) == len(TABLE)
assert [row[4] for row in TABLE].count(False) >= 15


@pytest.mark.parametrize("reply,gold,choices,correct,answer,rule", [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_grader_table(reply, gold, choices, correct, answer, rule):
    result = grade(reply, gold, choices=choices)
    assert (result.answer, result.rule) == (answer, rule)
    assert result.correct is correct
    assert (result.method is None) == (not correct)


def test_grading_from_worker_threads():
    """lmms-eval may grade in worker threads, where signal-based timeouts raise; results must not change."""
    expected = [row[4] for row in TABLE]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda row: grade(row[1], row[2], choices=row[3]).correct, TABLE))
    assert got == expected
    with ThreadPoolExecutor(max_workers=1) as pool:  # a case only math-verify can decide, off the main thread
        assert pool.submit(match_method, "\\dfrac{3}{4}", "0.75").result() == "math_verify"


# ---------------------------------------------------------------- extraction details


def test_reasoning_flag():
    assert extract_answer("<think>x</think><answer>3</answer>").in_reasoning is False
    inside = extract_answer("<think>so \\boxed{5}</think>")
    assert (inside.answer, inside.rule, inside.in_reasoning) == ("5", "boxed", True)


def test_box_with_unbalanced_tail_falls_back_to_the_last_closed_box():
    assert extract_answer("\\boxed{3} and then \\boxed{\\frac{1}{2").answer == "3"


def test_nested_box_in_box():
    assert extract_answer("\\boxed{\\boxed{5}}").answer == "5"


def test_sentence_end_is_not_a_decimal_point():
    assert extract_answer("The answer is 3.5. Then we stop.").answer == "3.5"


def test_long_prose_without_numbers_gives_nothing():
    assert extract_answer("I am not sure how to solve this problem, it needs more information about the figure.") is None


# ---------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    "pred,gold,method",
    [
        ("  7 ", "7", "exact"),
        ("X + 1", "x+1", "exact"),
        ("\\frac{1}{2}", "0.5", "math_verify"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", "math_verify"),
        ("1,000", "1000", "math_verify"),
        ("18 dollars", "18", "numeric"),
        ("100.5", "100", "numeric"),  # the paper's 1% relative tolerance
        ("101", "100", "numeric"),  # ... which also passes an integer off by one once the gold is >= 100
        ("0.0000004", "0", ANY),  # absolute 1e-6 near zero (math-verify's 6-digit rounding may see it first)
        ("1,2", "12", None),  # a pair, not a thousands separator
        ("102", "100", None),
        ("0.00001", "0", None),
        ("yes", "sey", None),
        ("", "5", None),
        ("5x", "5", None),
    ],
)
def test_match_method(pred, gold, method):
    if method is ANY:
        assert match_method(pred, gold) in {"math_verify", "numeric"}
    else:
        assert match_method(pred, gold) == method
    assert answers_equivalent(pred, gold) is (method is not None)


def test_tolerances_are_settings():
    assert not answers_equivalent("100.5", "100", rel_tol=0.001)
    assert answers_equivalent("0.00001", "0", abs_tol=1e-4)


@pytest.mark.parametrize(
    "answer,option",
    [("B", "1.5"), ("(B)", "1.5"), ("B.", "1.5"), ("B)", "1.5"), ("Option B", "1.5"), ("(B) 2.0", "2.0"),
     ("B. something else", "1.5"), ("2.50", "2.5"), ("\\text{D}", "2.5"), ("Because", None), ("b", None), ("7", None)],
)
def test_resolve_option(answer, option):
    assert resolve_option(answer, OPTIONS) == option


def test_option_equivalent_to_two_options_is_ambiguous():
    assert resolve_option("1.505", ["1.50", "1.51"]) is None


def test_option_lines_letter_options_as_the_grader_reads_them():
    from frankenstein_tasks.llm_endpoint import render_judge_prompt
    from frankenstein_tasks.transfer import problem_text

    eight = [f"{n} cm" for n in range(1, 9)]
    assert grading.option_lines(eight) == [f"({letter}) {n} cm" for letter, n in zip("ABCDEFGH", range(1, 9))]
    assert all(resolve_option(letter, eight) == option for letter, option in zip(grading.OPTION_LETTERS, eight))
    nine = [*eight, "9 cm"]  # a ninth option is (I), and the grader reads it back
    assert grading.option_lines(nine)[-1] == "(I) 9 cm" and resolve_option("(I)", nine) == "9 cm"
    assert resolve_option("I", eight) is None  # a letter past the options picks nothing
    # Both prompt builders list the options the same way: "(A) 1.0" ..., one per line.
    row = {"question": "How long is it?", "question_type": "multi_choice", "choices": OPTIONS}
    assert problem_text(row) == "How long is it?\nChoices:\n(A) 1.0\n(B) 1.5\n(C) 2.0\n(D) 2.5"
    judge = render_judge_prompt(question="How long is it?", gold="1.5", output="B", choices=OPTIONS)
    assert "Question:\nHow long is it?\nChoices:\n(A) 1.0\n(B) 1.5\n(C) 2.0\n(D) 2.5\n\nReference answer: 1.5" in judge


# ---------------------------------------------------------------- datasets


def test_mathvista_docs():
    mc = {"pid": "1", "question_type": "multi_choice", "answer_type": "text", "choices": OPTIONS, "answer": "1.5", "precision": None}
    assert grade_mathvista("<answer>B</answer>", mc).correct
    free = {"pid": "2", "question_type": "free_form", "answer_type": "float", "choices": None, "answer": "2.5", "precision": 1}
    assert grade_mathvista("The length is 2.5 cm", free).correct
    assert not grade_mathvista("The length is 2.4 cm", free).correct
    integer = {"pid": "3", "question_type": "free_form", "answer_type": "integer", "choices": None, "answer": "4"}
    assert grade_mathvista("<answer>4</answer>", integer).option is None
    with pytest.raises(FrankensteinError, match="lacks field"):
        grade_mathvista("B", {"pid": "4", "answer": "1"})
    with pytest.raises(FrankensteinError, match="no choices"):
        grade_mathvista("B", {"pid": "5", "question_type": "multi_choice", "choices": [], "answer": "1"})


def test_gold_helpers():
    assert gsm8k_gold("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n48+24 = <<48+24=72>>72\n#### 72") == "72"
    assert gsm8k_gold("a #### b #### 1,000 ") == "1,000"
    assert math500_gold({"answer": " \\left( 3, \\frac{\\pi}{2} \\right) ", "unique_id": "x"}) == "\\left( 3, \\frac{\\pi}{2} \\right)"
    for bad in ("no marker here", "#### "):
        with pytest.raises(FrankensteinError):
            gsm8k_gold(bad)
    with pytest.raises(FrankensteinError):
        math500_gold({"problem": "p"})
    with pytest.raises(FrankensteinError, match="gold answer is empty"):
        grade("\\boxed{1}", "")


def test_grade_as_dict_is_json_ready():
    import json

    row = json.loads(json.dumps(grade("<answer>B</answer>", "1.5", choices=OPTIONS).as_dict()))
    assert row == {"answer": "B", "rule": "answer_tag", "correct": True, "method": "option", "option": "1.5"}


# ---------------------------------------------------------------- the thread-safe deadline


def test_deadline_interrupts_a_runaway_comparison():
    finished = threading.Event()

    def runaway():
        try:
            while True:
                time.sleep(0.001)
        finally:
            finished.set()

    with ThreadPoolExecutor(max_workers=1) as pool:  # from a worker thread, as lmms-eval may call it
        assert pool.submit(grading._run_with_deadline, runaway, 0.05, "gave up").result() == "gave up"
    assert finished.wait(30)  # the helper was stopped, not left running


def test_deadline_passes_results_and_swallows_errors():
    assert grading._run_with_deadline(lambda: 41 + 1, 30, None) == 42
    assert grading._run_with_deadline(lambda: 1 / 0, 30, "default") == "default"
