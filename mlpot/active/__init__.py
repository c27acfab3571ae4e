"""Active learning (``mlpot-active``): committee → explore → select → label → retrain (see :mod:`mlpot.active.loop`)."""
