"""Celery workers: thin tasks that load a job's inputs, call `learngene`, and write the results back.

    python -m workers                # one worker, settings from LEARNGENE_* variables
    run_task_job(ctx, job_id)        # workers.grow: grow a collective by one task
    run_individual_job(ctx, job_id)  # workers.individuals: train a few-shot individual
"""
