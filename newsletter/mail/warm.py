"""Imported by the template renderer's zygote only (`newsletter.mail.isolation`): the
renderer loaded and warmed (`warm_up`), so every child it forks starts with that done."""

from newsletter.mail.render import warm_up

warm_up()
