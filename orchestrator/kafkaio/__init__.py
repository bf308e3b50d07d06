"""What every Kafka client of the product shares: the partitioner and client start-up
(:mod:`~orchestrator.kafkaio.clients`), topic names, creation and checks
(:mod:`~orchestrator.kafkaio.topics`), and the process shell of the worker and the webhook adapter
(:mod:`~orchestrator.kafkaio.service`)."""
