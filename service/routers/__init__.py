"""One router per resource: health, collectives, tasks, learngenes, individuals, jobs."""
