"""The evaluation data the default run scores on (``stsb/``, with its licence) and its reader (:mod:`pipeline.data.sts`)."""
