"""Baseline servers that stream the same events as tokenrelay's scripted provider."""
