"""Helpers for the ACME tests."""
