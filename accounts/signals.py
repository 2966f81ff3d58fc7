"""Signals that tell the audit trail about account changes made in `accounts`.

`accounts` is the bottom app and may not import `audit`; its views announce a
change here and `audit` records it (audit/account_trail.py).
"""

from django.dispatch import Signal

# sender: the User class; kwargs: target (the user changed), actor (who did it),
# changes ({"field": [old, new]}, never a password or a secret), reason (str).
account_changed = Signal()
