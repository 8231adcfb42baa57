import sys
from pathlib import Path

# The seed loop lives with the subprocess scripts so both use the same code.
sys.path.insert(0, str(Path(__file__).parent / "scripts"))
