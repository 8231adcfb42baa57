"""weft-compressed-ddp: data parallel training whose gradient all-reduce travels in 16 bits.

Select it by name once installed: ``Fabric(strategy="compressed_ddp", devices=2)``.
"""

__version__ = "0.1.0"
