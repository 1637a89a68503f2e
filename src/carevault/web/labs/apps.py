from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "carevault.web.labs"
    label = "labs"

    def ready(self) -> None:
        # (Imported here: models can be imported only once the apps are loaded.)
        from carevault.web.clinic import record_parts
        from carevault.web.clinic.forms import LabRequestForm
        from carevault.web.vault import sweep

        from . import actions, record
        from .models import LabFile

        # The sweep removes stored files no record names; these are the names lab files hold.
        sweep.register_stored_names(lambda: LabFile.objects.values_list("storage_name", flat=True))
        # The lab work shows on the clinic's record pages; doctors request tests from there.
        record_parts.register(
            record_parts.RecordPart(
                "labs",
                record.LAB_SECTIONS,
                record.lab_work,
                record_parts.Section(
                    "labs",
                    LabRequestForm,
                    "lab_form",
                    lambda u, p, d, c: actions.do_request_lab_test(u, p, client=c, **d),
                ),
                title="Lab tests and results",
            )
        )
