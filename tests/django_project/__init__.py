"""A small real Django project for tests/contrib/test_django.py (sqlite file database)."""
