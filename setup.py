"""Packaging for learndet. Everything it declares is read from settings.ini, the one place nbdev keeps it."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

here = Path(__file__).parent
config = ConfigParser(delimiters=['='])
config.read(here / 'settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

for key in ('version', 'description', 'keywords', 'author', 'author_email', 'copyright', 'git_url', 'lib_name',
            'min_python', 'license', 'status', 'requirements', 'dev_requirements', 'console_scripts'):
    if key not in cfg:
        raise SystemExit(f'settings.ini: missing required key {key!r}')

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses[cfg['license']]

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(here / 'README.md').read_text(encoding='utf-8') if (here / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    keywords=cfg['keywords'].split(),
    author=cfg['author'],
    author_email=cfg['author_email'],
    url=cfg['git_url'],
    license=lic[0],
    classifiers=[
        'Development Status :: ' + statuses[int(cfg['status']) - 1],
        'Intended Audience :: Developers',
        'Intended Audience :: Education',
        'Intended Audience :: Science/Research',
        'License :: ' + lic[1],
        'Natural Language :: English',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ] + [f'Programming Language :: Python :: 3.{v}' for v in range(int(cfg['min_python'].split('.')[1]), 14)],
    python_requires='>=' + cfg['min_python'],
    packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    include_package_data=True,
    package_data={cfg['lib_name']: ['configs/**/*.py', 'configs/**/*.json', 'configs/**/*.yaml', 'configs/*.py']},
    install_requires=cfg['requirements'].split(),
    extras_require={'dev': cfg['dev_requirements'].split()},
    entry_points={
        'console_scripts': cfg['console_scripts'].split(),
        'nbdev': [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"],
    },
    zip_safe=False,
)
