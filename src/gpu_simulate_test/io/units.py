"""Time units. Every persisted time is an integer number of nanoseconds; these convert from the seconds and
milliseconds that trace files, Vidur and vLLM speak."""

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
