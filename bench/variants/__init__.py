"""Throwaway variants loaded into a benchmark proxy as an extra callback module, to measure a
proposed change without touching hooks/. Each module patches at import and exposes `instance`."""
