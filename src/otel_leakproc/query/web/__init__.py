"""The status page served at `GET /`: static HTML, CSS and vanilla JS, no build step, no external fetches.

`index.html` is served at `/`; `app.js` and `style.css` at `/static/<file>`. The page reads
`api/v1/series` (a relative URL, so it works behind a path prefix) and renders it itself.
"""

from __future__ import annotations

from pathlib import Path


def static_dir() -> Path:
    """The folder holding `index.html`, `app.js` and `style.css`."""
    return Path(__file__).resolve().parent
