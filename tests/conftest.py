import os
os.environ.setdefault('NO_ALBUMENTATIONS_UPDATE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')

def pytest_collection_finish(session):
    "A test run that collects nothing is a broken run, not a green one."
    if not session.items and not session.config.getoption('collectonly'):
        raise RuntimeError('pytest collected no tests: check testpaths in pyproject.toml and the tests/ folder')
