import pytest

from retrainer.validation import PREFIX_BYTES, Reason, check_data_file, check_name

CONTRACT = {"Pregnancies": {"type": "integer", "min": 0, "max": 30}, "PlasmaGlucose": {"type": "number", "min": 0},
            "Age": {"type": "integer", "min": 0, "max": 130}, "Diabetic": {"type": "integer", "values": [0, 1]}}
GOOD = b"PatientID,Pregnancies,PlasmaGlucose,Age,Diabetic\n1,0,171,21,0\n2,8,92,43,1\n"


def check(data: bytes, name="diabetes.csv", size=None, max_bytes=10**9, prefix_bytes=PREFIX_BYTES):
    return check_data_file(name, len(data) if size is None else size, data[:prefix_bytes],
                           max_bytes=max_bytes, contract=CONTRACT)


def test_a_good_csv_passes():
    assert check(GOOD) is None
    assert check(b"\xef\xbb\xbf" + GOOD) is None           # a UTF-8 BOM (Excel's export)
    assert check(GOOD.replace(b"\n", b"\r\n")) is None     # Windows line ends


@pytest.mark.parametrize("name, what", [
    ("", "empty"),
    ("../secrets.csv", "'..' segment"),
    ("data/../../x.csv", "'..' segment"),
    ("./x.csv", "'..' segment"),
    ("/etc/passwd", "absolute"),
    ("C:/data.csv", "absolute"),
    ("data\\x.csv", "backslash"),
    ("data/x\x00.csv", "control"),
    ("data/\nx.csv", "control"),
    ("data//x.csv", "empty path segment"),
    ("data/", "empty path segment"),
    ("a" * 1025, "longer than 1024"),
    ("d/" + "a" * 256, "segment longer than 255"),
])
def test_path_tricks_are_rejected(name, what):
    rejection = check_name(name)
    assert rejection.reason_code == Reason.BAD_NAME
    assert what in rejection.message
    assert "\n" not in rejection.message and "rename it" in rejection.message
    assert check(GOOD, name=name).reason_code == Reason.BAD_NAME


@pytest.mark.parametrize("name", ["diabetes.csv", "2026/11/diabetes.csv", "données/été.csv", "a..b.csv"])
def test_plain_names_pass(name):
    assert check_name(name) is None


@pytest.mark.parametrize("data", [b"", b"   \n\n"])
def test_empty_files_are_rejected(data):
    rejection = check(data)
    assert rejection.reason_code == Reason.EMPTY
    assert "empty" in rejection.message


def test_a_header_without_rows_is_rejected_as_empty():
    rejection = check(b"Pregnancies,PlasmaGlucose,Age,Diabetic\n")
    assert rejection.reason_code == Reason.EMPTY
    assert "no data rows" in rejection.message


def test_a_file_over_the_limit_is_rejected_from_its_size_alone():
    rejection = check_data_file("big.csv", 2_000_000, b"", max_bytes=1_000_000, contract=CONTRACT)
    assert rejection.reason_code == Reason.TOO_LARGE
    assert "2000000 bytes" in rejection.message and "RETRAINER_MAX_FILE_BYTES" in rejection.message


@pytest.mark.parametrize("data", ["Pregnancies,PlasmaGlucose,Age,Diabetic\n1,2,3,é\n".encode("latin-1"),
                                  b"\x1f\x8b\x08\x00\x00\x00\x00\x00",     # gzip
                                  b"PK\x03\x04\x14\x00\x00\x00\x08\x00",   # xlsx / zip
                                  b"Pregnancies,PlasmaGlucose,Age,Diabetic\n1,2,3\x00,0\n"])
def test_non_utf8_and_binary_files_are_rejected(data):
    rejection = check(data)
    assert rejection.reason_code == Reason.NOT_UTF8
    assert "UTF-8" in rejection.message


def test_a_multibyte_character_cut_at_the_prefix_end_is_fine():
    row = "1,2,3,0,é\n".encode()
    data = b"Pregnancies,PlasmaGlucose,Age,Diabetic,Note\n" + row * (PREFIX_BYTES // len(row) + 10)
    cut = next(n for n in range(PREFIX_BYTES, PREFIX_BYTES - 12, -1) if data[n - 1] == 0xC3)
    rejection = check_data_file("x.csv", len(data), data[:cut], max_bytes=10**9, contract=CONTRACT)
    assert rejection is None


def test_a_multibyte_character_cut_at_the_end_of_the_whole_file_is_not_utf8():
    data = "Pregnancies,PlasmaGlucose,Age,Diabetic\n1,2,3,é".encode()[:-1]
    assert check(data).reason_code == Reason.NOT_UTF8


def test_only_the_prefix_is_judged():
    # a long valid file with garbage past the prefix: the check sees only the prefix it is given
    data = GOOD + b"1,2,3,4,0\n" * (PREFIX_BYTES // 10) + b"\xff\xfe garbage"
    assert check(data) is None


@pytest.mark.parametrize("data, what", [
    (b"Pregnancies;PlasmaGlucose;Age;Diabetic\n1;2;3;0\n", "';'"),
    (b"Pregnancies\tPlasmaGlucose\tAge\tDiabetic\n1\t2\t3\t0\n", "'\\t'"),
    (b"just some text\nwithout any commas\n", "not CSV"),
    (b'{"Pregnancies": 1, "Age": 2}\n', "looks like JSON"),
    (b"<html><body>Pregnancies,Age</body></html>\n", "looks like XML or HTML"),
    (b"Pregnancies,PlasmaGlucose,Age,Diabetic\n1,2,3,0\n4,5\n", "record 3 has 2 fields"),
    (b"Pregnancies,,Age,Diabetic\n1,2,3,0\n", "empty column name"),
    (b'Pregnancies,PlasmaGlucose,Age,Diabetic\n1,"2,3,0\n', "not valid CSV"),
])
def test_files_that_are_not_csv_are_rejected(data, what):
    rejection = check(data)
    assert rejection.reason_code == Reason.NOT_CSV
    assert what in rejection.message


def test_a_prefix_without_a_line_break_is_rejected():
    data = b"Pregnancies," + b"x" * (PREFIX_BYTES + 10)
    rejection = check(data)
    assert rejection.reason_code == Reason.NOT_CSV
    assert "no line break" in rejection.message


def test_missing_required_columns_are_named():
    rejection = check(b"Pregnancies,Glucose,Age\n1,2,3\n")
    assert rejection.reason_code == Reason.MISSING_COLUMNS
    assert "lacks required columns PlasmaGlucose, Diabetic" in rejection.message
    assert "\n" not in rejection.message


def test_every_message_is_one_line():
    for data in (b"", b"a;b\n1;2\n", b"\xff", b"x,y\n1,2\n"):
        rejection = check(data)
        assert rejection is not None and "\n" not in rejection.message


@pytest.mark.parametrize("data, says", [
    (GOOD + b"3,two,95,50,1\n", "row 4, column Pregnancies: 'two' is not a number; expected a whole number >= 0 and <= 30"),
    (GOOD + b"3,2,95,50,7\n", "row 4, column Diabetic: 7 is not an allowed value; expected one of 0, 1"),
    (GOOD + b"3,2.5,95,50,1\n", "row 4, column Pregnancies: 2.5 is not a whole number"),
    (GOOD + b"3,2,-4,50,1\n", "row 4, column PlasmaGlucose: -4 is out of range; expected a number >= 0"),
    (GOOD + b"3,2,nan,50,1\n", "'nan' is not a finite number"),
])
def test_rows_that_break_the_data_contract_are_rejected_naming_column_and_row(data, says):
    rejection = check(data)
    assert rejection.reason_code == Reason.BREAKS_CONTRACT
    assert says in rejection.message and "\n" not in rejection.message


def test_missing_values_and_columns_outside_the_contract_are_not_violations():
    assert check(GOOD + b"3,,95,,1\n" + b"4,1,,33,0\n") is None
    assert check(b"PatientID,Pregnancies,PlasmaGlucose,Age,Diabetic,Notes\n1,0,171,21,0,anything at all\n") is None


def test_the_contract_reaches_every_whole_row_of_the_prefix():
    rows = b"".join(b"%d,1,90,30,0\n" % i for i in range(3000))
    late = GOOD + rows + b"9,1,90,30,5\n" + rows
    assert len(late) > PREFIX_BYTES and late.index(b"9,1,90,30,5") < PREFIX_BYTES
    assert check(late, size=10**7).reason_code == Reason.BREAKS_CONTRACT
