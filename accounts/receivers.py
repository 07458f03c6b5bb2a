"""The project's one model-signal receiver pair: a save of Django's own user row that
deactivates the user or changes their password revokes what they held
(``accounts.services.user_access_revoke``).

The house rule is no signals; this is the exception, because the routes that make those
saves are Django's own and save the model directly: the admin's "Active" checkbox and its
password form, ``PasswordChangeView`` and ``SetPasswordForm``, ``manage.py changepassword``,
``set_password`` and ``save()`` anywhere. Django's ``User`` has no other hook short of a
custom user model, which an existing database cannot switch to. ``QuerySet.update()`` sends
no signal: code that deactivates in bulk calls ``user_deactivate`` for each user.

Cost: one query per save of a user row that may change ``is_active`` or ``password`` (none
for ``save(update_fields=[...])`` without them, as a login's ``last_login``), none on the
purchase path.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher, identify_hasher
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models.signals import post_save, pre_save

from .services import user_access_revoke, user_access_revoke_committed

_WATCHED = frozenset({"is_active", "password"})
_announce_on_commit: weakref.WeakSet[User] = weakref.WeakSet()


def _rehashed(user: User, stored_password: str, update_fields: frozenset[str] | None) -> bool:
    """Django's login upgrading an outdated hash of the same password (``check_password``'s
    setter saves the password field alone, with no new raw password): not a change."""
    if update_fields != frozenset({"password"}) or getattr(user, "_password", None) is not None:
        return False
    try:
        hasher = identify_hasher(stored_password)
    except ValueError:
        return False
    preferred = get_hasher()
    return hasher.algorithm != preferred.algorithm or hasher.must_update(stored_password)


def access_changing(
    sender: type[User],
    instance: User,
    raw: bool,
    update_fields: frozenset[str] | None,
    **kwargs: Any,
) -> None:
    """Before the row is written: revoke when the save deactivates or changes the password,
    so that a save whose revocation Redis cannot take fails instead (``RedisUnavailable``)."""
    if raw or instance.pk is None or (update_fields is not None and not _WATCHED & update_fields):
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("is_active", "password").first()
    if stored is None:
        return
    was_active, stored_password = stored
    deactivated = was_active and not instance.is_active
    new_password = stored_password != instance.password and not _rehashed(instance, stored_password, update_fields)
    if deactivated or new_password:
        user_access_revoke(user=instance)
        _announce_on_commit.add(instance)


def access_changed(sender: type[User], instance: User, **kwargs: Any) -> None:
    """Once the row is committed: announce again, for a process that read the old row meanwhile."""
    if instance in _announce_on_commit:
        _announce_on_commit.discard(instance)
        transaction.on_commit(functools.partial(user_access_revoke_committed, user_id=instance.pk), robust=True)


def connect() -> None:
    """Called once, from ``AccountsConfig.ready``."""
    model = get_user_model()
    pre_save.connect(access_changing, sender=model, dispatch_uid="accounts.access_changing")
    post_save.connect(access_changed, sender=model, dispatch_uid="accounts.access_changed")
