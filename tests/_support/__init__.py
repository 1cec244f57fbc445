"""Helpers shared by test modules (not tests): import these, never another test module."""
