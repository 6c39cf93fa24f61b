"""The HTTP/JSON API and the web page, served by `vidsearch serve` beside gRPC (`HttpFace`).

Each route turns its JSON into the gRPC request message and calls the same `SearchServicer` method,
so both faces share one set of checks, one error table (`serving/status.py`) and one auth rule
(bearer tokens). The page at `/` is plain HTML, CSS and JavaScript from `static/`: no build step.
"""
