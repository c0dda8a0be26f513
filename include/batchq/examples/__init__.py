"""Example handlers for the seed's three job types, over deterministic synthetic per-customer data.

``batchq worker --handlers batchq.examples`` (or the ``batchq.handlers`` entry point) registers:

* ``classification`` — logistic regression (gradient descent) predicting churn; reports held-out accuracy;
* ``segmentation`` — k-means over the customer's accounts; reports segment sizes and inertia;
* ``use_case_analysis`` — scores analytics use cases (churn prevention, upsell, anomaly review) from
  the same data and recommends one.

Each builds its data from a seeded RNG (customer × period), so a payload always yields the same
output — a re-delivered message produces an identical result. Pure Python: no numpy in worker images.
"""

from batchq.examples import classification, segmentation, use_case_analysis
from batchq.examples.data import CustomerData, customer_data

__all__ = ["CustomerData", "classification", "customer_data", "segmentation", "use_case_analysis"]
