"""Django's command-line utility for the hordak anchor project."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hordak_bench.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
