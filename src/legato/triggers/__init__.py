"""Runs that start by themselves: schedules (cron or intervals), new files, webhooks.

The scheduler and the file watcher run in the server process (``legato server start``) and in
``legato serve``; webhooks are routes of the server. Each starts a deployment's run through
``legato.store.starts.build_run`` (parameters checked against the deployment's recorded schema,
nothing imported) and inserts it with the key of what started it, in one transaction, so
nothing starts twice (see ``legato.store.triggers``).
"""
