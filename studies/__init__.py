"""Accuracy studies: the research behind the recipes and the docs' figures, apart from the
product (``pyimagesearch/``) and its benchmarks (``bench/``). Each module is a command,
``python -m studies.NAME --help``; studies/README.md lists them."""
