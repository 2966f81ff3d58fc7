from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("summary.json", views.summary_json, name="summary_json"),
    path("report/", views.report_html, name="report"),
    path("report.pdf", views.report_pdf, name="report_pdf"),
    path("report/figure/<slug:name>.svg", views.report_figure, name="report_figure"),
    path("report/table/<slug:name>.csv", views.report_table, name="report_table"),
]
