"""Request bodies (requests.py) and response bodies (responses.py) of the v1 API."""
