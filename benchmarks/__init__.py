"""Benchmarks of WavesTTSService against Pipecat's SmallestTTSService."""
