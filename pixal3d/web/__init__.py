"""The web app (``python app.py``): :mod:`pixal3d.web.service` holds the requests (no Gradio there),
:mod:`pixal3d.web.ui` the Gradio page."""
