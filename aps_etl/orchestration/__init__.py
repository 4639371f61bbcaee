"""Orchestration: the jobs and the daily schedule, the sensors (plan runs, source changes,
run failures) and their alerts, and each run's validation gate and load step."""
