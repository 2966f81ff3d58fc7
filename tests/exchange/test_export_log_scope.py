"""A site admin oversees the exports that could hold her sites' data, not another site's."""

import pytest

from exchange.models import ExportLog
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_export_log_shows_a_site_admin_the_exports_of_her_sites(client, site, other_site):
    site_admin = UserFactory(username="sa", role="admin")
    site_admin.sites.set([site])
    mine = UserFactory(username="mine", role="investigator")
    mine.sites.set([site])
    theirs = UserFactory(username="theirs", role="investigator")
    theirs.sites.set([other_site])
    everywhere = UserFactory(username="everywhere", role="investigator", study_wide=True)
    for user in (mine, theirs, everywhere, None):
        ExportLog.objects.create(user=user, username=user.username if user else "", level="deidentified", shape="long")
    client.force_login(site_admin)
    for url in ("/exports/log/", "/admin/exchange/exportlog/"):
        page = client.get(url).content.decode()
        assert "mine" in page and "everywhere" in page and "theirs" not in page, url
    assert set(ExportLog.objects.visible_to(site_admin).values_list("username", flat=True)) == {
        "mine",
        "everywhere",
        "",
    }
