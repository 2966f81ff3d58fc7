from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each role to the page it starts its day on."""
    user = request.user
    target = "patients:worklist" if user.can_enter_data else "dashboard:index"  # type: ignore[union-attr]
    try:
        return redirect(reverse(target))
    except NoReverseMatch:  # that part of the app is not installed yet
        return render(request, "home.html")
