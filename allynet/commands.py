"""`flask` CLI commands for admins (run with FLASK_APP=allynet)."""
import click
from flask import current_app

from allynet.db import ensure_indexes, get_db
from allynet.users import service as users_service


def register_commands(app):
    """Attach the admin commands to the app's CLI."""

    @app.cli.command("create-admin")
    @click.argument("email")
    @click.password_option()
    def create_admin(email, password):
        """Create an admin account, or promote and re-password an existing one."""
        user = users_service.bootstrap_admin(db=get_db(), email=email, password=password)
        click.echo(f"admin {user['email']} ({user['_id']}) ready")

    @app.cli.command("ensure-indexes")
    def ensure_indexes_command():
        """Create every declared index and report conflicts."""
        report = ensure_indexes(get_db(), current_app.config)
        for key in ("created", "present", "conflicts"):
            click.echo(f"{key}: {len(report[key])} {' '.join(report[key])}")

    # Pass-through commands: the scripts' own argparse options and --help apply unchanged,
    # on the app's database (FLASK_APP=allynet flask seed --help).
    passthrough = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}

    @app.cli.command("seed", context_settings=passthrough)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def seed_command(args):
        """Seed the demo city (the options of scripts/seed.py; --help for them)."""
        from allynet import seeding

        raise SystemExit(seeding.main(list(args), db=get_db(), config=current_app.config))

    @app.cli.command("maintenance", context_settings=passthrough)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def maintenance_command(args):
        """Maintenance: ensure-indexes, expire, purge-trails, recompute-trust, stats (--help)."""
        from allynet import maintenance

        raise SystemExit(maintenance.main(list(args), db=get_db(), config=current_app.config))
