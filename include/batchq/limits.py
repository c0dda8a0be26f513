"""Amazon SQS service limits as named constants.

Checked before we call SQS so that a violation is a specific, local error naming the offending key,
instead of a generic ``InvalidParameterValue`` for a whole batch.
Source: Amazon SQS Developer Guide, "Amazon SQS quotas".
"""

#: Entries per SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch call.
MAX_BATCH_ENTRIES = 10
#: Largest message body (and largest total of one batch call), in bytes. Raised from 256 KiB to 1 MiB in 2025.
MAX_MESSAGE_BYTES = 1_048_576
#: Same limit for the sum of all bodies in one SendMessageBatch call.
MAX_BATCH_BYTES = 1_048_576
#: Messages per ReceiveMessage call.
MAX_RECEIVE_MESSAGES = 10
#: Longest long-poll wait for ReceiveMessage.
MAX_WAIT_TIME_SECONDS = 20
#: Longest visibility timeout (12 hours).
MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200
#: Longest per-message / per-queue delivery delay.
MAX_DELAY_SECONDS = 900
#: maxReceiveCount range of a redrive policy.
MIN_MAX_RECEIVE_COUNT = 1
MAX_MAX_RECEIVE_COUNT = 1000
#: Queue names: up to 80 characters of alphanumerics, hyphens and underscores (FIFO: ".fifo" suffix).
MAX_QUEUE_NAME_LENGTH = 80
#: AWS advises watching the approximate counters for about a minute before treating a queue as empty.
RECOMMENDED_EMPTY_STABILITY_SECONDS = 60
#: MessageRetentionPeriod range, and SQS's default (4 days).
MIN_RETENTION_SECONDS = 60
MAX_RETENTION_SECONDS = 1_209_600
DEFAULT_RETENTION_SECONDS = 345_600
