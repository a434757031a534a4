"""Shared by the tests and the benchmarks: throwaway stacks of this project on
the real Docker engine (`testing.harness`). Not a test module itself."""
