"""The web UI's presentation: templates, its stylesheet, SVG charts and the words it shows.

Routes live in `idstitch.server.ui_routes`; nothing here reads the store or the request.
"""
