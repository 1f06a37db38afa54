"""The base every component stands on: serving, events, flags, logging and object helpers.

Upstream's component-base in spirit: a new component is its own logic plus a few lines of
wiring to these modules.
"""
