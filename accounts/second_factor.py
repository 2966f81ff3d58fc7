"""The second factor (django-otp): a TOTP app plus single-use recovery codes.

Admins, superusers and staff must use one; other roles may enrol. Anyone with
a confirmed device types a code after the password before reaching any page.
"""

import io
from typing import Any

import qrcode
import qrcode.image.svg
from django_otp import devices_for_user, user_has_device
from django_otp import verify_token as otp_verify_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

RECOVERY_CODES = 10


def has_second_factor(user: Any) -> bool:
    return bool(user.is_authenticated and user_has_device(user, confirmed=True))


# Whether a user who may go without a second factor had one when the session began: saves
# two queries on every request of every nurse and investigator.
ENROLLED_SESSION_KEY = "second_factor_enrolled"


def needs_verification(user: Any, session: Any = None) -> bool:
    """Whether this logged-in user must present a code (required for admins, or enrolled)."""
    if not user.is_authenticated:
        return False
    if user.requires_second_factor:
        return True
    if session is None:
        return has_second_factor(user)
    if ENROLLED_SESSION_KEY not in session:
        session[ENROLLED_SESSION_KEY] = has_second_factor(user)
    return bool(session[ENROLLED_SESSION_KEY])


def remember_enrolment(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """At log-in (user_logged_in): note once whether this user has a second factor."""
    if request is not None and hasattr(request, "session") and not user.requires_second_factor:
        request.session[ENROLLED_SESSION_KEY] = has_second_factor(user)


def pending_totp(user: Any) -> TOTPDevice:
    """The unconfirmed authenticator being enrolled (one per user, made on first visit)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def config_url(device: TOTPDevice) -> str:
    """The otpauth:// URI (issuer from OTP_TOTP_ISSUER) that the QR code encodes."""
    url: str = device.config_url
    return url


def qr_svg(data: str) -> str:
    """An inline SVG QR code (no image file, no external service)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    svg = buffer.getvalue().decode()
    return svg[svg.index("<svg") :]  # drop the XML declaration for inline use


def verify(user: Any, token: str) -> Any:
    """The confirmed device (TOTP or a recovery code) that accepts `token`, or None.

    Each device is checked through django-otp's throttled verification: repeated
    wrong codes make the device refuse for a growing delay.
    """
    token = "".join(token.split())
    if not token:
        return None
    for device in devices_for_user(user, confirmed=True):
        verified = otp_verify_token(user, device.persistent_id, token)
        if verified is not None:
            return verified
    return None


def new_recovery_codes(user: Any) -> list[str]:
    """Replace the user's recovery codes with a fresh set and return them (shown once)."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name="Recovery codes", defaults={"confirmed": True})
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def recovery_codes(user: Any) -> list[str]:
    return list(StaticToken.objects.filter(device__user=user).order_by("id").values_list("token", flat=True))


def remove_all(user: Any) -> int:
    """Delete every second-factor device of the user; returns how many there were."""
    count = 0
    for model in (TOTPDevice, StaticDevice):
        deleted, _ = model.objects.filter(user=user).delete()
        count += deleted
    return count
