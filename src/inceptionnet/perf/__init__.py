"""Performance measurement: throughput and memory side by side with reference implementations."""
