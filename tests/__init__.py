"""Tests of pipecat-waves."""
