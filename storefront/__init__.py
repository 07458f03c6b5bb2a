"""The server-rendered storefront, an adapter on top of the apps: the list of sales, a sale's
product page and the shopper's orders (templates under ``templates/storefront/``)."""
