import sys

from qa_pack_demo import main

sys.exit(main())
