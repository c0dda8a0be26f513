"""Everything in batchq that imports Airflow: the hook, operators, sensors, triggers, plugin and settings.

Nothing outside this package (and ``dags/``) may import Airflow: workers run without it installed.
"""
