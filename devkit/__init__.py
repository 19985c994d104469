"""Development helpers shared by the tests and the benchmarks: synthetic data, a tiny app fixture,
a live server and a headless browser. Not imported by the app or the ML core."""
