"""``python -m finetune`` is ``python -m finetune.sft``."""

import sys

from finetune.sft import main

sys.exit(main())
