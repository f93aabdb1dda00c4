"""The playground web page's static files (``index.html``, ``playground.js``, ``playground.css``).

Package data only: :mod:`service.protocols.ui` serves them at ``/ui``. Plain HTML, CSS and JavaScript,
no build step and no third-party code, so the page works offline.
"""
