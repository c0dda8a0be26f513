"""Running batchq on one machine: ``batchq dev run`` (:mod:`batchq.dev.run`), its SQS endpoint
(:mod:`batchq.dev.endpoint`), live view and summary (:mod:`batchq.dev.progress`, :mod:`batchq.dev.tiny_png`).
Ranks with the CLI; never imported by workers or Airflow code."""
