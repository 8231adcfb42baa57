"""Breakages of callbacks and loggers (see tests/compat/test_logging.py): each puts back one wrong behaviour."""

from breakages import breakage


@breakage
def csv_header_not_rewritten():
    """A new metric name after a flush is appended under the old header: its values land in the
    wrong columns."""
    from weft.loggers.csv_logs import CSVWriter

    CSVWriter._rewrite_with_header = lambda self: None


@breakage
def callback_kwargs_unfiltered():
    """Every keyword argument goes to every callback: one that takes fewer raises TypeError."""
    import weft.callbacks

    weft.callbacks.filter_kwargs = lambda method, kwargs: kwargs


@breakage
def callbacks_reversed():
    """Callbacks run last to first."""
    import weft.callbacks

    call = weft.callbacks.call
    weft.callbacks.call = lambda callbacks, *args, **kwargs: call(list(reversed(callbacks)), *args, **kwargs)


@breakage
def lightning_module_not_attached():
    """A LightningModule set up with weft is not attached: ``self.log`` logs nothing and it gets no callbacks."""
    import weft.fabric

    weft.fabric.Fabric._attach_lightning_module = lambda self, module: None


@breakage
def logs_from_every_rank():
    """Every rank calls the loggers, not global rank 0 alone (weft's CSVLogger writes wherever it is called)."""
    import weft.fabric
    import weft.loggers.base

    weft.loggers.base.process_rank = lambda: 0
    log_dict = weft.fabric.Fabric.log_dict

    def every_rank(self, metrics, step=None):
        rank = self._global_rank
        self._global_rank = 0
        try:
            log_dict(self, metrics, step)
        finally:
            self._global_rank = rank

    weft.fabric.Fabric.log_dict = every_rank
