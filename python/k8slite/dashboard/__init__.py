"""`k8slite dashboard`: a local web page that shows the cluster live.

security.py guards it (session secret, cookie, same-origin, CSP), trim.py cuts objects down to
what the pages show, hub.py holds the watches and fans changes out, app.py routes requests
(pages, static files, the server-sent event stream, scaling), main.py is the command.
"""
