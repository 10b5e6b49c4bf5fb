"""Vision localization by visual-token swapping (METHOD.md 1a): probe pairs, their loader and scoring.

    pairs.py    the deterministic generator (`frankenstein data make-pairs`) and the default cached sets
    dataset.py  pair folders in the shared layout: loading, checks that name file and line, counted skips
    scoring.py  is an answer right for the target / the source image, one scorer per task
    metrics.py  per-sample metrics for plain answers and probe responses (the frank_vision_* tasks)
"""
