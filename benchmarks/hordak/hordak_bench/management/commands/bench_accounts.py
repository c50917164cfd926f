"""Create N hordak asset accounts (EUR) in bulk and write their ids, one a line, to a file."""

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from hordak.models import Account


class Command(BaseCommand):
    help = "Create benchmark accounts"

    def add_arguments(self, parser):
        parser.add_argument("count", type=int)
        parser.add_argument("ids_file")

    def handle(self, count, ids_file, **options):
        with transaction.atomic():
            # Root accounts only, so the MPTT fields are trivial and bulk_create is safe.
            accounts = [
                Account(
                    name=f"Account {i}",
                    code=None,
                    type="AS",
                    currencies=["EUR"],
                    lft=1,
                    rght=2,
                    tree_id=i + 1,
                    level=0,
                )
                for i in range(count)
            ]
            Account.objects.bulk_create(accounts, batch_size=2000)
        with connection.cursor() as cur:
            cur.execute("SELECT id FROM hordak_account ORDER BY id")
            ids = [row[0] for row in cur.fetchall()]
        with open(ids_file, "w") as f:
            f.write("\n".join(str(i) for i in ids) + "\n")
        self.stdout.write(f"{len(ids)} accounts")
