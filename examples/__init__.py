"""Runnable tutorials (docs/tutorials/): each file's docstring says what it shows and how to run it.

A package only so that tests can import the plug-ins they define, e.g.
`from examples.custom_algorithm import A2C`; the files are meant to be run as scripts."""
