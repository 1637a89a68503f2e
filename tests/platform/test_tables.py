from carevault.platform.tables import format_table


def test_it_pads_every_column_to_its_widest_cell_under_a_dashed_rule():
    table = format_table(["name", "n"], [["a", "100"], ["longer", "2"]])
    assert table.splitlines() == [
        "name    n  ",
        "------  ---",
        "a       100",
        "longer  2  ",
    ]
