"""Staff e-mails in the reader's language: a nurse who chose Chinese gets her digest in Chinese, the
visits named as the Chinese pages name them; a nurse with no choice keeps the English one."""

import pytest
from django.core import mail

from selfreport import scheduler
from tests.selfreport.conftest import TODAY, run_worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_digest_is_written_in_the_language_its_nurse_chose(patient, nurse, site):
    nurse.email, nurse.language = "nurse@example.org", "zh-hans"
    nurse.save()
    scheduler.run_once()
    run_worker()
    (digest,) = [m for m in mail.outbox if m.to == ["nurse@example.org"]]
    # 30 days after the procedure: baseline, post and 1 week overdue, 1 month due now (as the English test says)
    assert digest.subject == f"到期随访：逾期 3，今天 1，本周 0（{TODAY.isoformat()}）"
    assert "逾期（3）：" in digest.body and f"{patient.study_id} 1个月" in digest.body
    assert "Overdue" not in digest.body and "Turn this e-mail off" not in digest.body


def test_a_nurse_without_a_choice_gets_the_english_digest(patient, nurse, site):
    nurse.email = "nurse@example.org"
    nurse.save()
    scheduler.run_once()
    run_worker()
    (digest,) = [m for m in mail.outbox if m.to == ["nurse@example.org"]]
    assert digest.subject.startswith("Visits due: 3 overdue") and "Overdue (3):" in digest.body
