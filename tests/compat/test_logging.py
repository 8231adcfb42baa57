"""Callbacks and loggers match Lightning Fabric: ``Fabric(callbacks=..., loggers=...)``, ``call``,
``log``, ``log_dict``, the CSV files written by each framework's own ``CSVLogger``, and a
LightningModule's ``self.log``. Each comparison is shown to fail with weft deliberately broken
(``scenarios/breakages_logging.py``)."""

import pytest
from harness import broken_compare, compare

pytestmark = pytest.mark.slow


def test_callbacks_and_csv_logs_match(tmp_path):
    compare("logging_single", tmp_path)


def test_unrewritten_csv_header_breaks_the_comparison(tmp_path):
    message = broken_compare("logging_single", tmp_path, "csv_header_not_rewritten")
    assert "main/csv/rows" in message


def test_unfiltered_callback_kwargs_break_the_comparison(tmp_path):
    message = broken_compare("logging_single", tmp_path, "callback_kwargs_unfiltered")
    assert "call/on_batch_end/0" in message


def test_reversed_callbacks_break_the_comparison(tmp_path):
    message = broken_compare("logging_single", tmp_path, "callbacks_reversed")
    assert "rank0/calls" in message


def test_unattached_lightning_module_breaks_the_comparison(tmp_path):
    message = broken_compare("logging_single", tmp_path, "lightning_module_not_attached")
    assert "module/csv" in message


def test_two_ranks_match(tmp_path):
    compare("logging_ddp", tmp_path, ranks=2)


def test_logging_from_every_rank_breaks_the_comparison(tmp_path):
    message = broken_compare("logging_ddp", tmp_path, "logs_from_every_rank", ranks=2)
    assert "rank1/writer_created_here" in message
